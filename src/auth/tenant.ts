// Who is calling: the tenant every authenticated request carries (request.tenant). A tenant is an
// API key's name; sessions belong to the key that created them. Without keys configured the server
// is local-only and every caller is the one local tenant, with the admin scope.
import type { FastifyRequest } from 'fastify'
import { ForbiddenError } from '../errors.ts'

export interface Tenant {
  /** The key's name (from the keys file, or derived from the key's hash), or 'local'. */
  key: string
  /** Admin scope: conversion jobs, and every tenant's sessions. */
  admin: boolean
}

/** The owner of sessions made without keys configured (and of session files older than owners). */
export const LOCAL_OWNER = 'local'
export const LOCAL_TENANT: Tenant = Object.freeze({ key: LOCAL_OWNER, admin: true })

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the access plugin on every route except the public ones (/health, /ready, /metrics). */
    tenant: Tenant
  }
}

/** An onRequest hook for route plugins that only admin keys may use. */
export async function requireAdmin (request: FastifyRequest): Promise<void> {
  if (!request.tenant.admin) throw new ForbiddenError(`key ${request.tenant.key} lacks the admin scope this route needs`)
}
