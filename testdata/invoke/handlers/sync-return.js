// Lambda ignores the return value of a non-async handler that never calls its callback.
exports.handler = (event) => ({ path: event.rawPath });
