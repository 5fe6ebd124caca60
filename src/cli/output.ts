// Human output in the seed's `key : value` form, or JSON with --json.

function lines (pairs: Array<[string, unknown]>): string {
  return pairs.map(([k, v]) => `${k} : ${String(v)}`).join('\n') + '\n'
}

/** The seed's dev_query fields, same names, same order. */
export function printDevice (d: Record<string, unknown>, json: boolean): void {
  if (json) { process.stdout.write(JSON.stringify(d, null, 2) + '\n'); return }
  process.stdout.write(lines([
    ['dev_name', d.path], ['major', d.major], ['minor', d.minor], ['sb_id', d.sbId], ['size', d.size],
    ['used_size', d.usedSize], ['free_size', d.freeSize], ['bsize', d.bsize], ['blocks', d.blocks],
    ['used_blocks', d.usedBlocks], ['inodes_tree_block', d.inodesTreeBlock], ['bm_block', d.bmBlock], ['bm_blocks', d.bmBlocks]
  ]))
}

interface Fragment { node?: string, stripe: number, index: number, device: string, sbId: string, block: number, blocks: number, length: number, hash: string }

/** The seed's query fields: obj_id and size, then block, bsize, device and sb_id per fragment. */
export function printObject (o: Record<string, unknown>, json: boolean): void {
  if (json) { process.stdout.write(JSON.stringify(o, null, 2) + '\n'); return }
  const schema = o.schema as { k: number, m: number }
  const pairs: Array<[string, unknown]> = [
    ['obj_id', o.id], ['size', o.size], ['schema', `n=${schema.k + schema.m} k=${schema.k} (${schema.k} data + ${schema.m} parity)`],
    ['hash', o.hash]
  ]
  if (o.name !== null && o.name !== undefined) pairs.push(['name', o.name])
  if (o.inline === true) pairs.push(['data', `inline in the manifest (${schema.m + 1} copies)`])
  if (Array.isArray(o.manifestHolders)) for (const h of o.manifestHolders) pairs.push(['manifest', h])
  for (const f of o.fragments as Fragment[]) {
    pairs.push(['fragment', `${f.stripe}/${f.index}`])
    if (f.node !== undefined) pairs.push(['node', f.node])
    pairs.push(['block', f.block], ['bsize', 4096], ['device', f.device], ['sb_id', f.sbId], ['fragment_hash', f.hash])
  }
  process.stdout.write(lines(pairs))
}
