// The Express app, shared by the Lambda entry point (lambda.js) and local development (local.js).
const express = require('express');

const app = express();

app.get('/', (req, res) => {
  res.json({ message: 'Hello from Lambda!' });
});

app.get('/health', (req, res) => {
  res.json({ status: 'ok' });
});

module.exports = app;
