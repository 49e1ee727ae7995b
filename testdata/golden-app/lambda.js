const { greet } = require('./lib/greet');

exports.handler = async () => ({ statusCode: 200, body: JSON.stringify({ message: greet('golden') }) });
