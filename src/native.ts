// Loads the native addon (build/Release/ddfs_native.node). Only the typed wrappers
// (src/hash.ts, src/erasure/*.ts, src/store/native-store.ts) import this module; each declares
// the shape of the functions it uses.
import path from 'node:path'

// eslint-disable-next-line @typescript-eslint/no-require-imports
const load = require('node-gyp-build') as (dir: string) => unknown

export const addon = load(path.join(__dirname, '..', '..')) as Record<string, unknown>
