// The "api" service: Node's own http module, plain HTTP on loopback; the mesh adds mutual TLS.
require('http').createServer((request, response) => {
  response.end(`hello from node, you asked for ${request.url}\n`);
}).listen(Number(process.env.API_PORT), '127.0.0.1');
