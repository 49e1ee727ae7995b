exports.handler = async () => new Promise(() => {});
