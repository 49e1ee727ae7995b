exports.routes = {
  get: async (event) => ({ route: 'nested', path: event.rawPath }),
};
