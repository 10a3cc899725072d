// Stable kRPC error codes. Clients branch on `code`, never on the message, so codes never change meaning once shipped.

export const ERROR_CODES = {
  BAD_REQUEST: 400,
  INVALID_PARAMS: 400,
  UNAUTHENTICATED: 401,
  TOKEN_EXPIRED: 401,
  PERMISSION_DENIED: 403,
  SUDO_REQUIRED: 403,
  NOT_FOUND: 404,
  METHOD_NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  CONFLICT: 409,
  FAILED_PRECONDITION: 412,
  PAYLOAD_TOO_LARGE: 413,
  COMPACTED: 410,
  RATE_LIMITED: 429,
  INTERNAL: 500,
  UNAVAILABLE: 503,
  TIMEOUT: 504,
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(x: unknown): x is ErrorCode {
  return typeof x === 'string' && Object.prototype.hasOwnProperty.call(ERROR_CODES, x);
}

export class KrpcError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** Machine-readable details safe to show a client (field paths, conflicting keys). Never secrets. */
    readonly data?: unknown,
  ) {
    super(message);
    this.name = 'KrpcError';
  }

  get httpStatus(): number {
    return ERROR_CODES[this.code];
  }

  toJSON(): { code: ErrorCode; message: string; data?: unknown } {
    return this.data === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, data: this.data };
  }
}
