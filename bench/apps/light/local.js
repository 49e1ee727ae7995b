// Runs the app on http://127.0.0.1:3000 for local development: `npm start`.
const app = require('./app');

const host = '127.0.0.1';
const port = Number(process.env.PORT) || 3000;

app.listen(port, host, () => {
  console.log(`Listening on http://${host}:${port}`);
});
