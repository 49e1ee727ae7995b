exports.handler = async () => {
  const result = { name: 'loop' };
  result.self = result;
  return result;
};
