// brittle ships no types; this covers the part of its API ddfs uses.
declare module 'brittle' {
  interface Assertion {
    is (actual: unknown, expected: unknown, message?: string): void
    not (actual: unknown, expected: unknown, message?: string): void
    alike (actual: unknown, expected: unknown, message?: string): void
    unlike (actual: unknown, expected: unknown, message?: string): void
    ok (value: unknown, message?: string): void
    absent (value: unknown, message?: string): void
    pass (message?: string): void
    fail (message?: string): void
    exception: ((fn: (() => unknown) | Promise<unknown>, expected?: RegExp | Function, message?: string) => Promise<void>) & {
      all: (fn: (() => unknown) | Promise<unknown>, expected?: RegExp | Function, message?: string) => Promise<void>
    }
    execution (fn: (() => unknown) | Promise<unknown>, message?: string): Promise<void>
    comment (message: string): void
    plan (n: number): void
    teardown (fn: () => unknown, opts?: { order?: number }): void
    timeout (ms: number): void
    tmp (): Promise<string>
    end (): void
    test (name: string, fn: (t: Test) => unknown): Promise<void>
    test (name: string, opts: TestOptions, fn: (t: Test) => unknown): Promise<void>
  }
  interface Test extends Assertion {
    readonly name: string
  }
  interface TestOptions { timeout?: number, skip?: boolean, todo?: boolean, solo?: boolean }
  interface TestFn {
    (name: string, fn: (t: Test) => unknown): Promise<void>
    (name: string, opts: TestOptions, fn: (t: Test) => unknown): Promise<void>
    skip (name: string, fn: (t: Test) => unknown): Promise<void>
    solo (name: string, fn: (t: Test) => unknown): Promise<void>
    configure (opts: { timeout?: number, bail?: boolean, serial?: boolean }): void
  }
  const test: TestFn
  export default test
  export type { Test }
}
