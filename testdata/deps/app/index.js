const ms = require("ms");

exports.handler = async () => ({ statusCode: 200, body: ms(60000) });
