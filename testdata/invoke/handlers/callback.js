exports.handler = (event, context, callback) => {
  setTimeout(() => callback(null, { style: 'callback', path: event.rawPath }), 10);
};

exports.fails = (event, context, callback) => {
  callback(new TypeError('expected a POST request'));
};

exports.legacy = (event, context) => {
  context.succeed({ style: 'context.succeed' });
};
