import type { FastifyPluginAsync } from 'fastify';
import type { Mode } from '../../keys/token.js';
import type { Vendor, VendorCatalog } from '../../vendors/vendor.js';

/**
 * A vendor as the control API shows it: where it lives, which modes keys can be issued in, how
 * the credential is injected and what each endpoint costs. Never a secret.
 */
export function vendorView(v: Vendor) {
  const modes = (['test', 'live'] as Mode[]).filter((m) => v.secret(m) !== undefined);
  const { kind, auth, unknown_cost, endpoints, ...details } = v.describe();
  return {
    object: 'vendor' as const,
    name: v.name,
    kind,
    origin: v.origin,
    modes,
    auth,
    unknown_cost,
    endpoints,
    ...details,
  };
}

/** `GET /v1/vendors`: the configured vendors, their modes and their endpoints' cost rules. */
export const vendorRoutes: FastifyPluginAsync<{ catalog: VendorCatalog; catalogOf?: (tenantId: string) => VendorCatalog }> = async (
  app,
  { catalog, catalogOf },
) => {
  app.get('/v1/vendors', async (req) => ({
    object: 'list',
    // A tenant sees its own vendors (the default tenant: the top-level ones).
    data: [...(catalogOf && req.principal ? catalogOf(req.principal.tenantId) : catalog).values()].map(vendorView),
    has_more: false,
    next_cursor: null,
  }));
};
