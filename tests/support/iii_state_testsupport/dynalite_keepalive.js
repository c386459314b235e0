// Preloaded into dynalite (`node --require`, or NODE_OPTIONS): idle keep-alive connections stay
// open. Node's HTTP server closes a connection after 5 s idle (`keepAliveTimeout`); a client that
// sends a request on it at that very moment gets the connection closed instead of a reply, and a
// write then ends as an unknown outcome: a race of the test server's clock, not of our code.
// (The adapter's handling of cut connections is tested on purpose, through a faulty proxy.)
const http = require('http')
const createServer = http.createServer
http.createServer = function (...args) {
  const server = createServer.apply(this, args)
  server.keepAliveTimeout = 0 // never close an idle keep-alive connection
  return server
}
