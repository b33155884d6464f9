/**
 * The JSON that disk tools print (`lsblk --json`, `sfdisk --json`), parsed and checked against
 * a schema, with one error code for both ways it can be wrong.
 * @module
 */
import { z } from 'zod';
import { AgentError, type ErrorCode } from '../errors.ts';

export interface ToolJsonOptions {
  /** How the tool is named in messages (`lsblk`, `sfdisk --json`). */
  tool: string;
  code: ErrorCode;
  /** The message for output that is JSON but not the expected shape. */
  shapeMessage?: ((error: z.ZodError) => string) | undefined;
}

/** `stdout` parsed as JSON and validated; `code` when it is not JSON or not the shape. */
export function parseToolJson<S extends z.ZodType>(stdout: string, schema: S, options: ToolJsonOptions): z.output<S> {
  let json: unknown;
  try {
    json = JSON.parse(stdout);
  } catch (err) {
    throw new AgentError(options.code, `${options.tool} printed output that is not JSON`, { cause: err });
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const message = options.shapeMessage?.(parsed.error) ?? `${options.tool} output has an unexpected shape: ${z.prettifyError(parsed.error)}`;
    throw new AgentError(options.code, message, { cause: parsed.error });
  }
  return parsed.data;
}
