exports.handler = async () => {
  Promise.reject(new Error('nobody handles this'));
  await new Promise((resolve) => setTimeout(resolve, 100));
  return 'too late';
};
