// Load generator of bench/documents_bench.py: y-websocket protocol clients under Node.
// Usage: node documents_load.mjs '<json options>'   (options: see main() below)
// Each client speaks the wire protocol itself (sync step 1/2, updates) with its own Y.Doc and
// makes small text edits whose text carries a marker "k<client>.<seq>;". A receiver finds the
// markers in the update bytes (Yjs keeps inserted strings verbatim), which gives end-to-end
// latency (send -> receipt by another client) and delivered updates. The last stdout line is JSON.
// Several generators can share a throughput or paced run (documents_bench.py's run_load_split): each
// takes the rooms firstRoom .. firstRoom + rooms - 1; with gate, it says 'connected' and waits for a
// stdin line before its first edit; with histogram, its result carries its latencies' histogram.
import * as Y from '../tests/interop/node_modules/yjs/dist/yjs.mjs'
import WebSocket from '../tests/interop/node_modules/ws/wrapper.mjs'

const opts = JSON.parse(process.argv[2])
const now = () => Number(process.hrtime.bigint()) / 1e6 // ms
const sentAt = new Map()
const latencies = []
let delivered = 0
let measuring = false

function varuint (n) {
  const out = []
  while (n > 127) { out.push(128 | (n & 127)); n = Math.floor(n / 128) }
  out.push(n)
  return out
}
function readVaruint (buf, pos) {
  let n = 0; let mult = 1
  for (;;) {
    const b = buf[pos++]
    n += (b & 127) * mult
    if (b < 128) return [n, pos]
    mult *= 128
  }
}
const syncMsg = (sub, payload) => Buffer.concat([Buffer.from([0, sub, ...varuint(payload.length)]), Buffer.from(payload)])

class Client {
  constructor (room, cid) {
    this.room = room; this.cid = cid; this.seq = 0; this.inFlight = 0; this.lastEcho = now()
    this.doc = new Y.Doc()
    this.text = this.doc.getText('text')
    this.doc.on('update', (update, origin) => {
      if (origin !== 'remote' && this.ws.readyState === 1) this.ws.send(syncMsg(2, update))
    })
    this.onEcho = null
  }

  connect (within = 10000) {
    this.t0 = now()
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.unsynced = true; resolve(this) }, within)
      // opts.urls (several hubs of a cluster): clients spread round-robin, as a load balancer would,
      // or with opts.spread 'rooms' each room's clients on one hub (a balancer hashing the room)
      const turn = opts.spread === 'rooms' ? Number(this.room.split('-').pop()) : this.cid
      const url = opts.urls ? opts.urls[turn % opts.urls.length] : opts.url
      this.ws = new WebSocket(`${url}/${this.room}`, { perMessageDeflate: false })
      this.ws.binaryType = 'nodebuffer'
      this.ws.on('open', () => {
        this.openedAfter = now() - this.t0
        this.ws.send(syncMsg(0, Y.encodeStateVector(this.doc)))
      })
      this.ws.on('error', reject)
      this.ws.on('close', (code, reason) => { this.closedWith = `${code} ${reason}` })
      this.ws.on('message', (data) => {
        if (data[0] !== 0) return
        const sub = data[1]
        if (sub === 2) return this.scan(data)
        const [len, pos] = readVaruint(data, 2)
        const payload = data.subarray(pos, pos + len)
        if (sub === 0) {
          this.ws.send(syncMsg(1, Y.encodeStateAsUpdate(this.doc, payload)))
        } else if (sub === 1) {
          const received = now()
          if (opts.applyStep2) Y.applyUpdate(this.doc, payload, 'remote')
          this.applyMs = now() - received // the client's own share of the join, whatever the server
          this.syncedAfter = now() - this.t0
          clearTimeout(timer)
          resolve(this)
        }
      })
    })
  }

  edit () {
    const key = `${this.cid}.${this.seq++}`
    sentAt.set(key, now())
    this.inFlight++
    this.text.insert(this.text.length, `k${key};`)
  }

  scan (data) {
    const s = data.toString('latin1')
    const re = /k(\d+)\.(\d+);/g
    let m
    const t = now()
    while ((m = re.exec(s)) !== null) {
      if (Number(m[1]) === this.cid) {
        this.inFlight--; this.lastEcho = t
        if (this.onEcho) this.onEcho()
      } else if (measuring) {
        delivered++
        const at = sentAt.get(`${m[1]}.${m[2]}`)
        if (at !== undefined) latencies.push(t - at)
      }
    }
  }

  close () { this.ws.terminate() }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const pct = (sorted, p) => sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] : null
const line = () => new Promise((resolve) => process.stdin.once('data', resolve))
// latencies (sorted) counted in buckets of HIST_MS: [[bucket, count], ...], for whoever merges
// several load generators' figures (documents_bench.py's run_load_split)
const HIST_MS = 0.01
function histogram (sorted) {
  const out = []
  for (const ms of sorted) {
    const b = Math.floor(ms / HIST_MS)
    if (out.length && out[out.length - 1][0] === b) out[out.length - 1][1]++
    else out.push([b, 1])
  }
  return out
}

// rooms `${prefix}-${first}` .. `${prefix}-${first + rooms - 1}`, client ids from first * perRoom:
// the same names and ids (so the same hub for each client, see connect) as the whole set of rooms
// in one generator, whichever slice of it this one takes
async function connectAll (rooms, perRoom, prefix, first = 0) {
  const clients = []
  let cid = first * perRoom
  for (let r = first; r < first + rooms; r++) {
    for (let c = 0; c < perRoom; c++) clients.push(new Client(`${prefix}-${r}`, cid++))
  }
  const t0 = now()
  // connect in batches of 50 so that neither side is flooded by handshakes
  for (let i = 0; i < clients.length; i += 50) await Promise.all(clients.slice(i, i + 50).map((c) => c.connect()))
  const unsynced = clients.filter((c) => c.unsynced).length
  return { clients: clients.filter((c) => !c.unsynced), joinMs: now() - t0, unsynced }
}

async function load (paced) {
  const { clients, joinMs, unsynced } = await connectAll(opts.rooms, opts.clients, paced ? 'paced' : 'fast',
    opts.firstRoom || 0)
  if (opts.gate) { // several generators: all connected, they start (and so measure) together
    process.stdout.write(JSON.stringify({ event: 'connected', connected: clients.length, unsynced }) + '\n')
    await line()
  }
  const timers = []
  let stop = false
  for (const c of clients) {
    if (paced) {
      const period = 1000 / opts.rate
      timers.push(setTimeout(() => timers.push(setInterval(() => { if (!stop) c.edit() }, period)), Math.random() * period))
    } else {
      c.onEcho = () => { while (!stop && c.inFlight < opts.window) c.edit() }
      for (let i = 0; i < opts.window; i++) c.edit()
    }
  }
  // a stalled client (lost echo) gets its window back after 2 s
  const watchdog = setInterval(() => {
    for (const c of clients) if (!paced && c.inFlight > 0 && now() - c.lastEcho > 2000) { c.inFlight = 0; c.onEcho() }
  }, 500)
  await sleep(opts.warmup * 1000)
  // the server's CPU time is read at these two events (documents_bench.py)
  process.stdout.write(JSON.stringify({ event: 'measuring' }) + '\n')
  measuring = true
  const t0 = now()
  await sleep(opts.duration * 1000)
  measuring = false
  process.stdout.write(JSON.stringify({ event: 'measured' }) + '\n')
  const elapsed = (now() - t0) / 1000
  stop = true
  clearInterval(watchdog)
  timers.forEach((t) => { clearTimeout(t); clearInterval(t) })
  await sleep(300)
  clients.forEach((c) => c.close())
  const sorted = Float64Array.from(latencies).sort()
  return {
    join_all_ms: joinMs,
    unsynced,
    delivered,
    measured_s: elapsed,
    delivered_per_s: delivered / elapsed,
    p50_ms: pct(sorted, 0.5),
    p99_ms: pct(sorted, 0.99),
    samples: sorted.length,
    ...(opts.histogram ? { latency_hist_ms: HIST_MS, latency_hist: histogram(sorted) } : {})
  }
}

async function idle () {
  const { clients, joinMs, unsynced } = await connectAll(opts.rooms, opts.clients, 'idle')
  process.stdout.write(JSON.stringify({ event: 'ready', connected: clients.length + unsynced }) + '\n')
  await line()
  clients.forEach((c) => c.close())
  return { join_all_ms: joinMs, connected: clients.length, unsynced }
}

async function history () {
  const writer = await new Client('history', 0).connect()
  const total = opts.history
  let done
  const finished = new Promise((resolve) => { done = resolve })
  let sent = 0
  writer.onEcho = () => {
    while (sent < total && writer.inFlight < 64) { writer.edit(); sent++ }
    if (sent === total && writer.inFlight <= 0) done()
  }
  const writeStart = now()
  writer.onEcho()
  const watchdog = setInterval(() => { // lost echoes: do not wait for them forever
    if (writer.closedWith) return done() // closed by the server: what it wrote is all there is
    if (now() - writer.lastEcho > 2000) { writer.inFlight = 0; writer.onEcho() }
  }, 500)
  await finished
  const writeMs = now() - writeStart
  clearInterval(watchdog)
  const expected = writer.text.length
  const writerClosed = writer.closedWith || null // by the server, while writing
  if (opts.waitStored) { // the server stores behind its echoes: the writer stays until told it caught up
    process.stdout.write(JSON.stringify({ event: 'written', updates: total }) + '\n')
    await line()
  }
  writer.close()
  await sleep(opts.coldDelay * 1000)
  opts.applyStep2 = true
  // wait until the server has the whole history stored (a room loaded cold shows all of it)
  const settleStart = now()
  for (;;) {
    const probe = await new Client('history', 999).connect(60000)
    const complete = probe.text.length === expected
    probe.close()
    await sleep(opts.coldDelay * 1000)
    if (complete || now() - settleStart > 60000) break
  }
  const settleMs = now() - settleStart
  const joins = []
  for (let i = 0; i < (opts.joins || 9); i++) {
    const c = await new Client('history', 1000 + i).connect(60000)
    joins.push({ ms: c.syncedAfter, syncMs: c.syncedAfter - c.openedAfter, applyMs: c.applyMs, complete: c.text.length === expected })
    c.close()
    await sleep(opts.coldDelay * 1000)
  }
  const ms = joins.map((j) => j.ms).sort((a, b) => a - b)
  const syncMs = joins.map((j) => j.syncMs).sort((a, b) => a - b)
  const applyMs = joins.map((j) => j.applyMs).sort((a, b) => a - b)
  return {
    updates: total,
    writer_closed: writerClosed,
    write_ms: writeMs,
    written_per_s: total / (writeMs / 1000),
    settle_ms: settleMs,
    join_ms_median: ms[Math.floor(ms.length / 2)],
    join_ms: ms,
    sync_ms_median: syncMs[Math.floor(syncMs.length / 2)],
    sync_ms: syncMs,
    apply_ms_median: applyMs[Math.floor(applyMs.length / 2)],
    apply_ms: applyMs,
    complete: joins.every((j) => j.complete)
  }
}

// join floor: sequential joins of an empty room, each after coldDelay seconds of quiet
async function join () {
  opts.applyStep2 = true
  const ms = []
  for (let i = 0; i < opts.joins; i++) {
    await sleep(opts.coldDelay * 1000)
    const c = await new Client('join', 2000 + i).connect()
    ms.push(c.syncedAfter)
    c.close()
  }
  ms.sort((a, b) => a - b)
  return { joins: ms.length, join_ms_median: ms[Math.floor(ms.length / 2)], join_ms: ms }
}

setTimeout(() => { console.error('load generator: time budget exceeded'); process.exit(2) }, opts.budget * 1000)
const modes = { throughput: () => load(false), paced: () => load(true), idle, history, join }
modes[opts.mode]().then((result) => {
  // exit once written: a line longer than the pipe's buffer (a latency histogram) is written in parts
  process.stdout.write(JSON.stringify({ event: 'result', ...result }) + '\n', () => process.exit(0))
}, (err) => { console.error(err); process.exit(1) })
