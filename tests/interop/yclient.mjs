// A y-websocket client under Node, driven by JSON lines on stdin, answering on stdout.
// Usage: node yclient.mjs <serverUrl> <room>   (serverUrl like ws://127.0.0.1:8000/yjs)
// Commands: {"op":"text","key":"text","index":0,"insert":"abc"} | {"op":"map","key":"m","path":["a"],"set":{...}}
//           {"op":"push","key":"arr","values":[...]} | {"op":"dump"} | {"op":"awareness","state":{...}}
//           {"op":"peers"} | {"op":"close"}
// Events: {"event":"synced"} {"event":"dump","doc":...} {"event":"peers","states":{...}}
//         {"event":"denied","reason":"..."} {"event":"status","status":"..."}
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import readline from 'node:readline'

const [url, room] = process.argv.slice(2)
const doc = new Y.Doc()
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
const provider = new WebsocketProvider(url, room, doc, { WebSocketPolyfill: WebSocket, disableBc: true })
provider.on('sync', (synced) => { if (synced) out({ event: 'synced' }) })
provider.on('status', (e) => out({ event: 'status', status: e.status }))
provider.on('connection-close', (e) => out({ event: 'close', code: e && e.code, reason: e && e.reason }))
const origWarn = console.warn
console.warn = (...args) => {
  const text = args.join(' ')
  if (text.includes('Permission denied')) out({ event: 'denied', reason: text })
  else origWarn(...args)
}

const dump = () => ({
  text: doc.getText('text').toString(),
  m: doc.getMap('m').toJSON(),
  arr: doc.getArray('arr').toJSON()
})

function handle (cmd) {
  switch (cmd.op) {
    case 'text':
      doc.getText(cmd.key || 'text').insert(cmd.index ?? 0, cmd.insert)
      break
    case 'map': {
      doc.transact(() => {
        let target = doc.getMap(cmd.key || 'm')
        for (const part of cmd.path || []) {
          let next = target.get(part)
          if (!(next instanceof Y.Map)) { next = new Y.Map(); target.set(part, next) }
          target = next
        }
        for (const [k, v] of Object.entries(cmd.set)) {
          if (v && typeof v === 'object' && v.$text !== undefined) target.set(k, new Y.Text(v.$text))
          else target.set(k, v)
        }
      })
      break
    }
    case 'push':
      doc.getArray(cmd.key || 'arr').push(cmd.values)
      break
    case 'dump':
      out({ event: 'dump', doc: dump() })
      break
    case 'awareness':
      provider.awareness.setLocalState(cmd.state)
      break
    case 'peers': {
      const states = {}
      provider.awareness.getStates().forEach((s, id) => { if (id !== doc.clientID) states[id] = s })
      out({ event: 'peers', states })
      break
    }
    case 'close':
      provider.destroy()
      out({ event: 'closed' })
      setTimeout(() => process.exit(0), 50)
      break
    default:
      out({ event: 'error', message: 'unknown op ' + cmd.op })
  }
}

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim()) handle(JSON.parse(line))
})
out({ event: 'started', clientID: doc.clientID })
