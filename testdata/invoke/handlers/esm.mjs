export const handler = async (event) => ({ format: 'mjs', path: event.rawPath });
