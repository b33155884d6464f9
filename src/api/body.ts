/**
 * Request bodies: read only when a route asks for one (after the token was checked), never
 * past the size limit, and what happens to the rest of a body when the reply comes first.
 * @module
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { AgentError } from '../errors.ts';

/** The declared Content-Length, 0 when there is none (chunked bodies are counted as they come). */
export function declaredLength(req: IncomingMessage): number {
  const value = Number(req.headers['content-length'] ?? 0);
  return Number.isFinite(value) ? value : 0;
}

export function tooLarge(limit: number, declared?: number): AgentError {
  return new AgentError('PAYLOAD_TOO_LARGE', declared === undefined
    ? `Request body exceeds the limit of ${limit} bytes`
    : `Request body of ${declared} bytes exceeds the limit of ${limit} bytes`);
}

/**
 * After a reply sent while the body is still on its way (401 before reading it, 413, 503): the
 * rest is read and thrown away for at most `graceMs`, so a client that sends its whole body
 * before reading (as python-requests does) still gets to read the reply; a client still sending
 * then is cut off. Nothing of it is kept.
 */
export function discardRestOfBody(req: IncomingMessage, res: ServerResponse, graceMs: number): void {
  if (req.complete) return;
  res.once('finish', () => {
    if (req.complete) return;
    const timer = setTimeout(() => { if (!req.complete) req.socket.destroy(); }, graceMs);
    const stop = () => clearTimeout(timer);
    req.once('end', stop);
    req.socket.once('close', stop);
    req.resume();
  });
}

/**
 * Reads the whole body, at most `limit` bytes. A client that asked for `100-continue` is told
 * to go on only now, so it sends nothing before the route has accepted the request.
 */
export function readBody(req: IncomingMessage, res: ServerResponse, limit: number): Promise<Buffer> {
  const declared = declaredLength(req);
  if (declared > limit) return Promise.reject(tooLarge(limit, declared));
  if (/^100-continue$/i.test(String(req.headers.expect ?? '')) && !res.headersSent) res.writeContinue();
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (err?: AgentError) => {
      req.off('data', onData).off('end', onEnd).off('close', onClose).off('error', onClose);
      if (err) {
        reject(err);
      } else resolve(Buffer.concat(chunks, size));
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) done(tooLarge(limit));
      else chunks.push(chunk);
    };
    const onEnd = () => done();
    const onClose = () => done(new AgentError('INVALID_REQUEST', 'The connection closed before the whole request body arrived'));
    req.on('data', onData).on('end', onEnd).on('close', onClose).on('error', onClose);
  });
}
