// The devices a node has attached: one NativeBlockStore each, opened exclusively.
import path from 'node:path'
import { DdfsError } from '../errors'
import { formatDevice, openDevice, probeDevice, type NativeBlockStore } from '../store/native-store'
import type { DeviceInfo } from '../store/types'
import type { DevicePool } from '../object/types'

export class NodeDevicePool implements DevicePool {
  private readonly devices = new Map<string, NativeBlockStore>()

  stores (): NativeBlockStore[] {
    return [...this.devices.values()]
  }

  get (device: string): NativeBlockStore | undefined {
    return this.devices.get(path.resolve(device))
  }

  /** Formats (when asked) and attaches a device. */
  async attach (device: string, format: boolean): Promise<DeviceInfo> {
    const p = path.resolve(device)
    if (this.devices.has(p)) throw DdfsError.DEVICE_IN_USE(`${p} is already attached to this node`)
    if (format) await formatDevice(p, { force: true })
    const store = await openDevice(p)
    this.devices.set(p, store)
    return store.info()
  }

  /** Detaches a device: a checkpoint, then the lock is released. */
  async detach (device: string): Promise<void> {
    const p = path.resolve(device)
    const store = this.devices.get(p)
    if (store === undefined) throw DdfsError.NOT_FOUND(`${p} is not attached to this node`)
    this.devices.delete(p)
    await store.close()
  }

  /** Summary of an attached device, or a read-only look at one that is not attached. */
  async info (device: string): Promise<DeviceInfo> {
    const p = path.resolve(device)
    const store = this.devices.get(p)
    if (store !== undefined) return store.info()
    const probed = await probeDevice(p)
    if (probed === null) throw DdfsError.DEVICE_NOT_FORMATTED(`${p} holds no ddfs store; format it with: ddfs dev add -d ${p} -f`)
    return probed
  }

  async closeAll (): Promise<void> {
    const stores = this.stores()
    this.devices.clear()
    await Promise.allSettled(stores.map((s) => s.close()))
  }
}
