// Domain errors: what went wrong, in the terms of the service that noticed it. Services throw
// these; src/http/errors.ts is the one place that maps them to HTTP statuses and bodies.

export class DomainError extends Error {
  constructor (message: string, readonly param: string | null = null) {
    super(message)
  }
}

/** A model, session or job that does not exist. */
export class NotFoundError extends DomainError {}
/** The thing exists but is in use or in the way (a session generating, a name taken). */
export class BusyError extends DomainError {}
/** A well-formed request whose values cannot be served. */
export class InvalidError extends DomainError {}
/** A request that could not be parsed at all (malformed JSON, a binary frame). */
export class MalformedError extends InvalidError {}
/** No API key, or one the server does not know. */
export class UnauthorizedError extends DomainError {}
/** A known key without the scope this needs (admin), or a browser Origin that is not allowed. */
export class ForbiddenError extends DomainError {}
/** A key's (or the server's) session quota is used up: delete sessions or wait for them to expire. */
export class QuotaExceededError extends DomainError {}

/** The client went away before its work started: nobody reads the answer (499, as nginx logs it). */
export class ClientGoneError extends DomainError {}

/** The server is full right now; the client may retry after `retryAfterSeconds`. */
export class OverloadedError extends DomainError {
  constructor (message: string, readonly retryAfterSeconds = 1) {
    super(message)
  }
}

/** This key (or address) sent more requests than its rate limit allows; it may retry later. */
export class RateLimitedError extends OverloadedError {}

/** The server cannot serve this at all right now (loading, shutting down, disabled). */
export class UnavailableError extends DomainError {
  constructor (message: string, readonly retryAfterSeconds = 5) {
    super(message)
  }
}

export const notFound = (message: string, param: string | null = null): NotFoundError => new NotFoundError(message, param)
export const conflict = (message: string, param: string | null = null): BusyError => new BusyError(message, param)
export const unprocessable = (message: string, param: string | null = null): InvalidError => new InvalidError(message, param)
export const overloaded = (message: string, retryAfterSeconds = 1): OverloadedError => new OverloadedError(message, retryAfterSeconds)
export const unavailable = (message: string): UnavailableError => new UnavailableError(message)
