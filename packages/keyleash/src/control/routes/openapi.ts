import type { FastifyPluginAsync } from 'fastify';
import { openapiDocument } from '../openapi.js';

export const openapiRoutes: FastifyPluginAsync = async (app) => {
  const doc = openapiDocument();
  app.get('/openapi.json', async () => doc);
};
