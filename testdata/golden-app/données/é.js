module.exports = "é";
