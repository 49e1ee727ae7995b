const leftPad = require('left-pad');

exports.greet = (name) => leftPad(`hello ${name}`, 16);
