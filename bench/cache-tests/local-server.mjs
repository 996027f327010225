// Wrapper (not part of the suite): bind the unmodified test server to 127.0.0.1 only.
import http from 'http'
const origListen = http.Server.prototype.listen
http.Server.prototype.listen = function (port, ...rest) {
  if (typeof port === 'number' || typeof port === 'string') return origListen.call(this, Number(port), '127.0.0.1', ...rest)
  return origListen.call(this, port, ...rest)
}
await import('./test-engine/server/server.mjs')
