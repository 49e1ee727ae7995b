// The timer keeps the event loop busy, so only the function timeout ends this invocation.
exports.handler = async () => {
  setInterval(() => {}, 1000);
  return new Promise(() => {});
};

exports.busy = () => {
  for (;;) {
    // Blocks the event loop: no timer inside this process can fire.
  }
};
