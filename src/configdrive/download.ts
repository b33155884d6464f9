/**
 * Fetching a config drive given as an `http://`/`https://` URL (a Swift temp URL when the
 * conductor stores config drives in an object store), as IPA's `get_configdrive` does: one GET
 * through the agent's downloader (src/io/http.ts, the same proxy, TLS and redirect rules as
 * image URLs), a status other than 2xx fails, the timeout applies to connecting and to each wait
 * for data, and a deadline to the whole download.
 * @module
 */
import { httpDownload, type HttpDownload, type HttpTransportOptions } from '../io/http.ts';

export interface DownloadOptions extends Pick<HttpTransportOptions, 'dispatcher' | 'ca' | 'insecure'> {
  signal?: AbortSignal | undefined;
  /** Connect, headers and between-chunks timeout (IPA: 60 s). */
  timeoutMs: number;
  /** The whole download. */
  deadlineMs: number;
  /** The body is refused past this many bytes (CONFIGDRIVE_TOO_LARGE). */
  maxBytes: number;
}

/** True for values the conductor sends as a URL rather than as content. */
export function isConfigDriveUrl(value: string): boolean {
  return /^https?:\/\//i.test(value.trim());
}

/** GET `url`; resolves once a 2xx arrived, with the body still to be read (then `close()` it). */
export function downloadConfigDrive(url: string, options: DownloadOptions): Promise<HttpDownload> {
  return httpDownload(url, {
    ...options,
    subject: 'the config drive',
    errorCode: 'CONFIGDRIVE_DOWNLOAD_FAILED',
    tooLargeCode: 'CONFIGDRIVE_TOO_LARGE',
  });
}
