// VTOE_METRICS_PORT: the agent's counters over HTTP for a Prometheus scraper on this host.
// Loopback only: the counters name programs and hosts, and the endpoint has no authentication.
import { createServer, type Server } from 'node:http';
import { constants } from 'node:os';
import { VtoeSystemError } from '../errors.js';
import { formatOpenMetrics } from '../metrics.js';
import type { StatsSnapshot } from './stats.js';

const CONTENT_TYPE = 'application/openmetrics-text; version=1.0.0; charset=utf-8';

/** Serves GET /metrics on 127.0.0.1:port; throws VtoeSystemError naming VTOE_METRICS_PORT if it cannot listen. */
export async function startMetricsServer(port: number, stats: () => StatsSnapshot): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found: the counters are at /metrics\n');
    } else if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('method not allowed: use GET\n');
    } else {
      // A throw here would end the agent: a scrape that fails must only fail the scrape.
      let body: string;
      try {
        body = formatOpenMetrics(stats());
      } catch (err) {
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end(`${String(err)}\n`);
        return;
      }
      res.writeHead(200, { 'content-type': CONTENT_TYPE }).end(body);
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(listenError(port, err)));
    server.listen(port, '127.0.0.1', () => resolve());
  });
  // An embedded agent must not keep its program alive for the sake of this server.
  server.unref();
  return server;
}

function listenError(port: number, err: NodeJS.ErrnoException): Error {
  const errno = constants.errno[err.code as keyof typeof constants.errno];
  if (errno === undefined) return err;
  const why = err.code === 'EADDRINUSE'
    ? 'another program listens there: choose a free port, or 0 to serve no metrics'
    : err.message;
  return new VtoeSystemError(errno, `VTOE_METRICS_PORT=${port}: cannot serve metrics on 127.0.0.1:${port}: ${why}`, { cause: err });
}

/** Closes the server and any connection a scraper keeps open, so that the agent's stop is not held up. */
export function stopMetricsServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
