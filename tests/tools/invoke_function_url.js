#!/usr/bin/env node
// Calls a Lambda handler the way a Lambda Function URL would and prints its result as JSON.
//
//   invoke_function_url.js TASK_DIR HANDLER [PATH]
//
// HANDLER has Lambda's form FILE.EXPORT: `lambda.handler` loads TASK_DIR/lambda.js (or .mjs or
// .cjs) and calls its `handler` export. PATH (default `/`) may carry a query string. The event
// is a payload format 2.0 GET request. Handlers may return a promise or take a callback. The
// handler's console output goes to stderr so that stdout holds only the result. On failure the
// error goes to stderr and the exit status is 1. Usage errors exit 2.

'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { pathToFileURL } = require('node:url');
const crypto = require('node:crypto');

// An error in finding or loading the handler, reported without a stack trace.
class LoadError extends Error {}

const MODULE_EXTENSIONS = ['.js', '.mjs', '.cjs'];
const TIMEOUT_MS = 30_000;

function usage(message) {
  process.stderr.write(`invoke_function_url.js: ${message}\n`);
  process.stderr.write('usage: invoke_function_url.js TASK_DIR HANDLER [PATH]\n');
  process.exit(2);
}

function findModule(taskDir, handler) {
  const dot = handler.lastIndexOf('.');
  if (dot <= 0 || dot === handler.length - 1) {
    usage(`invalid handler ${JSON.stringify(handler)}: expected FILE.EXPORT, e.g. lambda.handler`);
  }
  const base = path.resolve(taskDir, handler.slice(0, dot));
  const exportName = handler.slice(dot + 1);
  for (const extension of MODULE_EXTENSIONS) {
    if (fs.existsSync(base + extension)) {
      return { file: base + extension, exportName };
    }
  }
  throw new LoadError(`handler module not found: ${base} with any of ${MODULE_EXTENSIONS.join(', ')}`);
}

async function loadHandler(file, exportName) {
  let loaded;
  if (file.endsWith('.mjs')) {
    loaded = await import(pathToFileURL(file).href);
  } else {
    try {
      loaded = require(file);
    } catch (error) {
      // A .js file in a package with "type": "module" is ES module code that require() rejects.
      if (error.code !== 'ERR_REQUIRE_ESM') throw error;
      loaded = await import(pathToFileURL(file).href);
    }
  }
  const handler = loaded[exportName] ?? loaded.default?.[exportName];
  if (typeof handler !== 'function') {
    throw new LoadError(`${file} does not export a function named ${JSON.stringify(exportName)}`);
  }
  return handler;
}

function functionUrlEvent(requestPath) {
  const [rawPath, rawQueryString = ''] = requestPath.split(/\?(.*)/s);
  const now = new Date();
  const queryStringParameters = Object.fromEntries(new URLSearchParams(rawQueryString));
  const event = {
    version: '2.0',
    routeKey: '$default',
    rawPath,
    rawQueryString,
    headers: {
      host: 'abcdefghijklmnopqrstuvwxyz0123456.lambda-url.us-east-1.on.aws',
      'user-agent': 'curl/8.5.0',
      accept: '*/*',
      'x-amzn-trace-id': 'Root=1-67748b00-0123456789abcdef01234567',
      'x-forwarded-for': '203.0.113.10',
      'x-forwarded-port': '443',
      'x-forwarded-proto': 'https',
    },
    requestContext: {
      accountId: 'anonymous',
      apiId: 'abcdefghijklmnopqrstuvwxyz0123456',
      domainName: 'abcdefghijklmnopqrstuvwxyz0123456.lambda-url.us-east-1.on.aws',
      domainPrefix: 'abcdefghijklmnopqrstuvwxyz0123456',
      http: {
        method: 'GET',
        path: rawPath,
        protocol: 'HTTP/1.1',
        sourceIp: '203.0.113.10',
        userAgent: 'curl/8.5.0',
      },
      requestId: crypto.randomUUID(),
      routeKey: '$default',
      stage: '$default',
      time: now.toISOString(),
      timeEpoch: now.getTime(),
    },
    isBase64Encoded: false,
  };
  // Function URLs leave the field out when there is no query string.
  if (rawQueryString) event.queryStringParameters = queryStringParameters;
  return event;
}

function lambdaContext() {
  const deadline = Date.now() + TIMEOUT_MS;
  const functionName = 'lambda-image-test';
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:us-east-1:123456789012:function:${functionName}`,
    memoryLimitInMB: '128',
    awsRequestId: crypto.randomUUID(),
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: '2025/01/01/[$LATEST]0123456789abcdef0123456789abcdef',
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
  };
}

function invoke(handler, event, context) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`handler timed out after ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
    const settle = (error, result) => {
      clearTimeout(timer);
      if (error) reject(error);
      else resolve(result);
    };
    context.done = settle;
    context.succeed = (result) => settle(null, result);
    context.fail = (error) => settle(error);
    try {
      const returned = handler(event, context, settle);
      if (returned && typeof returned.then === 'function') {
        returned.then((result) => settle(null, result), settle);
      } else if (handler.length < 3) {
        settle(null, returned);
      }
    } catch (error) {
      settle(error);
    }
  });
}

async function main() {
  const [taskDir, handlerName, requestPath = '/'] = process.argv.slice(2);
  if (!taskDir || !handlerName) usage('missing TASK_DIR or HANDLER');
  if (!requestPath.startsWith('/')) usage(`invalid PATH ${JSON.stringify(requestPath)}: must start with /`);

  // Everything the handler logs goes to stderr, so stdout contains only the JSON result.
  const stdoutWrite = process.stdout.write.bind(process.stdout);
  process.stdout.write = process.stderr.write.bind(process.stderr);
  for (const level of ['log', 'info', 'debug']) console[level] = console.error;

  const { file, exportName } = findModule(taskDir, handlerName);
  const handler = await loadHandler(file, exportName);
  const result = await invoke(handler, functionUrlEvent(requestPath), lambdaContext());
  stdoutWrite(`${JSON.stringify(result === undefined ? null : result)}\n`, () => process.exit(0));
}

main().catch((error) => {
  const message = error instanceof LoadError ? error.message : `handler failed: ${error?.stack ?? error}`;
  process.stderr.write(`invoke_function_url.js: ${message}\n`);
  process.exit(1);
});
