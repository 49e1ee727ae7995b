class ValidationError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ValidationError';
  }
}

exports.handler = async () => {
  throw new ValidationError('order 42 has no items');
};
