// Installs an import map for the npm packages of src/roomhub/web/documents (yjs, y-websocket and
// their dependencies), served as plain ES modules under /static/documents/node_modules.
// Load it with a classic <script> before any module script.
(() => {
  const base = '/static/documents/node_modules/'
  const lib0 = ['array', 'binary', 'broadcastchannel', 'buffer', 'decoding', 'encoding', 'environment',
    'error', 'function', 'iterator', 'logging', 'map', 'math', 'object', 'observable', 'performance',
    'promise', 'random', 'set', 'string', 'time', 'url', 'webcrypto', 'storage', 'conditions', 'number',
    'pair', 'dom', 'json', 'symbol', 'eventloop', 'mutex', 'traits', 'equality', 'hash/sha256', 'isomorphic']
  const imports = {
    yjs: base + 'yjs/dist/yjs.mjs',
    'y-websocket': base + 'y-websocket/src/y-websocket.js',
    'isomorphic.js': base + 'isomorphic.js/browser.mjs'
  }
  for (const name of lib0) {
    imports['lib0/' + name] = base + 'lib0/' + name + '.js'
    imports['lib0/' + name + '.js'] = base + 'lib0/' + name + '.js'
  }
  for (const name of ['auth', 'awareness', 'sync']) imports['y-protocols/' + name] = base + 'y-protocols/' + name + '.js'
  const script = document.createElement('script')
  script.type = 'importmap'
  script.textContent = JSON.stringify({ imports })
  document.currentScript.after(script)
})()
