exports.handler = async () => {
  return { missing: 'a closing brace' };
