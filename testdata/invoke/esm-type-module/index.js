import { basename } from 'node:path';

export const handler = async (event) => ({
  format: 'type-module',
  path: event.rawPath,
  module: basename(import.meta.url),
});
