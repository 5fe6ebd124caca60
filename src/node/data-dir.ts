// A node's data directory: its identity (ed25519 key pair seed, 0600), its config (attached
// devices) and its pid file. The config is a small JSON file: it is never on the data path.
import fs from 'node:fs'
import path from 'node:path'
import { loadOrCreateIdentity, type KeyPair } from '../cluster/identity'
import { DdfsError } from '../errors'

export interface NodeConfig {
  devices: string[]
  /** Set by ddfs node drain: the node keeps moving its data off across restarts. */
  draining?: boolean
}

export class DataDir {
  constructor (readonly dir: string) {}

  ensure (): void {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 })
  }

  get configFile (): string { return path.join(this.dir, 'config.json') }
  get pidFile (): string { return path.join(this.dir, 'node.pid') }

  readConfig (): NodeConfig {
    try {
      const raw = JSON.parse(fs.readFileSync(this.configFile, 'utf8')) as Partial<NodeConfig>
      return { devices: Array.isArray(raw.devices) ? raw.devices.filter((d) => typeof d === 'string') : [], draining: raw.draining === true }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { devices: [] }
      throw DdfsError.BAD_ARGUMENT(`cannot read ${this.configFile}: ${(err as Error).message}; fix or remove it`)
    }
  }

  writeConfig (config: NodeConfig): void {
    this.ensure()
    const tmp = `${this.configFile}.tmp`
    fs.writeFileSync(tmp, JSON.stringify(config, null, 2) + '\n', { mode: 0o600 })
    fs.renameSync(tmp, this.configFile)
  }

  addDevice (device: string): void {
    const config = this.readConfig()
    if (!config.devices.includes(device)) config.devices.push(device)
    this.writeConfig(config)
  }

  removeDevice (device: string): boolean {
    const config = this.readConfig()
    const before = config.devices.length
    config.devices = config.devices.filter((d) => d !== device)
    this.writeConfig(config)
    return config.devices.length !== before
  }

  /** The node's ed25519 key pair, created on first use. */
  keyPair (): KeyPair {
    return loadOrCreateIdentity(this.dir)
  }

  readPid (): number | null {
    try {
      const pid = Number(fs.readFileSync(this.pidFile, 'utf8').trim())
      return Number.isInteger(pid) && pid > 0 ? pid : null
    } catch {
      return null
    }
  }
}
