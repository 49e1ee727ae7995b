// Runs one Lambda invocation for `lambda-image invoke`, with the host's node.
//
//   node runner.cjs REQUEST_FILE
//
// REQUEST_FILE is JSON: { taskRoot, handler, event, context, resultFile }. The handler is loaded
// and called the way the Lambda Node.js runtime does it, following the JavaScript sources of
// aws-lambda-nodejs-runtime-interface-client (src/UserFunction.js, src/Runtime.js,
// src/CallbackContext.js). The outcome goes to resultFile as { "success": bool, "output": value },
// where output is the handler's result or the error object Lambda would return, or as
// { "unsupported": message }. The process's stdout and stderr are left to the handler.
//
// NOTE: later, TypeScript releases of that client (src/function/) load every module with
// import() and reject callback-style handlers (three or more parameters) with
// Runtime.CallbackHandlerDeprecated. This runner keeps the older rules.
//
// The time limit is enforced by the caller, which kills this process, because a handler that
// blocks the event loop would also block a timer set here.

'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { pathToFileURL } = require('node:url');

const request = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));

// --- Errors, named and shaped as the runtime names and shapes them ------------------------------

function runtimeErrorClass(name) {
  const errorClass = class extends Error {};
  // The runtime sets the name on the prototype, so the stack's first line carries it too.
  errorClass.prototype.name = `Runtime.${name}`;
  return errorClass;
}

const ImportModuleError = runtimeErrorClass('ImportModuleError');
const HandlerNotFound = runtimeErrorClass('HandlerNotFound');
const MalformedHandlerName = runtimeErrorClass('MalformedHandlerName');
const UserCodeSyntaxError = runtimeErrorClass('UserCodeSyntaxError');
const UnhandledPromiseRejection = runtimeErrorClass('UnhandledPromiseRejection');
const NodeJsExit = runtimeErrorClass('NodeJsExit');

// The error object that Lambda returns for a failed invocation.
function toErrorResponse(error) {
  try {
    if (isErrorLike(error)) {
      return {
        errorType: error.name,
        errorMessage: error.message,
        trace: error.stack.split('\n'),
      };
    }
    return { errorType: typeof error, errorMessage: String(error), trace: [] };
  } catch {
    return {
      errorType: 'handled',
      errorMessage:
        'callback called with Error argument, but there was a problem while retrieving one or more of its message, name, and stack',
    };
  }
}

function isErrorLike(value) {
  return (
    value instanceof Error ||
    (value &&
      typeof value.name === 'string' &&
      typeof value.message === 'string' &&
      typeof value.stack === 'string')
  );
}

// --- Reporting the outcome -----------------------------------------------------------------------

let reported = false;

// Writes the outcome, whose `output` is the JSON text `outputJson`, and ends the process.
function report(success, outputJson) {
  if (reported) return;
  reported = true;
  fs.writeFileSync(request.resultFile, `{"success":${success},"output":${outputJson}}`);
  // Lambda freezes the sandbox after the response. A local run ends here instead, so that open
  // sockets or timers left by the handler do not keep the process alive.
  process.exit(0);
}

function reportResult(result) {
  let json;
  try {
    // JSON.stringify returns undefined for a function or a symbol, which Lambda sends as null.
    json = JSON.stringify(result === undefined ? null : result) ?? 'null';
  } catch {
    reportError(new Error('Unable to stringify response body'));
    return;
  }
  report(true, json);
}

function reportError(error) {
  report(false, JSON.stringify(toErrorResponse(error)));
}

// Reports a handler that this runner cannot run the way Lambda would.
function reportUnsupported(message) {
  if (reported) return;
  reported = true;
  fs.writeFileSync(request.resultFile, JSON.stringify({ unsupported: message }));
  process.exit(0);
}

// --- Loading the handler (UserFunction.js) -------------------------------------------------------

function checkHandlerName(fullHandler) {
  if (fullHandler.includes('..')) {
    throw new MalformedHandlerName(
      `'${fullHandler}' is not a valid handler name. Use absolute paths when specifying root directories in handler names.`,
    );
  }
}

// Splits `src/app.routes.get` into module root `src/`, module `app` and function path `routes.get`.
function splitHandler(fullHandler) {
  const handlerString = path.basename(fullHandler);
  const moduleRoot = fullHandler.substring(0, fullHandler.indexOf(handlerString));
  const match = handlerString.match(/^([^.]*)\.(.*)$/);
  if (!match) {
    throw new MalformedHandlerName('Bad handler');
  }
  return { moduleRoot, moduleName: match[1], functionPath: match[2] };
}

function tryRequireFile(file) {
  return fs.existsSync(file) ? require(file) : undefined;
}

async function tryImportFile(file) {
  return fs.existsSync(file) ? import(pathToFileURL(file).href) : undefined;
}

// Returns whether the nearest package.json from `folder` up sets "type": "module". The runtime
// walks up to `/`; here the walk stops at the task root, because the host's folders above it
// are not in the image.
function packageTypeIsModule(folder) {
  if (folder.endsWith(`${path.sep}node_modules`)) {
    return false;
  }
  const packageJson = path.join(folder, 'package.json');
  if (fs.existsSync(packageJson)) {
    try {
      const parsed = JSON.parse(fs.readFileSync(packageJson, 'utf8'));
      if (parsed) {
        return parsed.type === 'module';
      }
    } catch (error) {
      console.warn(
        `${packageJson} cannot be read, it will be ignored for ES module detection purposes.`,
        error,
      );
      return false;
    }
  }
  const taskRoot = path.resolve(request.taskRoot);
  if (folder === taskRoot || !folder.startsWith(taskRoot + path.sep)) {
    return false;
  }
  return packageTypeIsModule(path.dirname(folder));
}

// Loads the module: the extensionless file with require(), then `.js` (require() or import(),
// by the package type), `.mjs` with import(), `.cjs` with require(), and last a Node.js-style
// require.resolve() from the task root.
async function requireModule(appRoot, moduleRoot, moduleName) {
  const file = path.resolve(appRoot, moduleRoot, moduleName);

  const extensionless = tryRequireFile(file);
  if (extensionless) {
    return extensionless;
  }

  const isModule = packageTypeIsModule(path.dirname(file));
  if (!isModule) {
    const loaded = tryRequireFile(`${file}.js`);
    if (loaded) {
      return loaded;
    }
  }

  const loaded =
    (isModule && (await tryImportFile(`${file}.js`))) ||
    (await tryImportFile(`${file}.mjs`)) ||
    tryRequireFile(`${file}.cjs`);
  if (loaded) {
    return loaded;
  }

  const resolved = require.resolve(moduleName, { paths: [appRoot, moduleRoot] });
  return require(resolved);
}

async function loadModule(appRoot, moduleRoot, moduleName) {
  try {
    return await requireModule(appRoot, moduleRoot, moduleName);
  } catch (error) {
    if (error instanceof SyntaxError) {
      throw new UserCodeSyntaxError(error);
    }
    if (error && error.code === 'MODULE_NOT_FOUND') {
      throw new ImportModuleError(error);
    }
    throw error;
  }
}

async function loadHandler(appRoot, fullHandler) {
  checkHandlerName(fullHandler);
  const { moduleRoot, moduleName, functionPath } = splitHandler(fullHandler);
  const loaded = await loadModule(appRoot, moduleRoot, moduleName);
  const handler = functionPath.split('.').reduce((object, key) => object && object[key], loaded);
  if (!handler) {
    throw new HandlerNotFound(`${fullHandler} is undefined or not exported`);
  }
  if (typeof handler !== 'function') {
    throw new HandlerNotFound(`${fullHandler} is not a function`);
  }
  return handler;
}

// The global that the runtime provides for response streaming. Modules may call it while they
// load, so it exists, but a streaming handler itself is reported as unsupported.
const STREAMING = Symbol.for('aws.lambda.runtime.handler.streaming');
globalThis.awslambda = {
  streamifyResponse(handler) {
    handler[STREAMING] = 'response';
    return handler;
  },
  HttpResponseStream: {
    from(stream) {
      return stream;
    },
  },
};

// --- Calling the handler (Runtime.js, CallbackContext.js) ----------------------------------------

// Runs `listener` when the event loop has nothing left to do. The runtime uses this moment to
// report callback results and handlers that ended without one.
let beforeExitListener = null;
process.on('beforeExit', () => {
  const listener = beforeExitListener;
  beforeExitListener = null;
  if (listener) listener();
});

function buildContext(callbacks) {
  const { functionTimeoutMs, ...fields } = request.context;
  const deadline = Date.now() + functionTimeoutMs;
  return Object.assign(callbacks, fields, {
    clientContext: undefined,
    identity: undefined,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
  });
}

function invoke(handler) {
  let waitForEmptyEventLoop = true;
  let finished = false;
  // Only the first call to the callback or to done, succeed or fail counts.
  const firstCallOnly =
    (callback) =>
    (...args) => {
      if (finished) return;
      finished = true;
      callback(...args);
    };

  const done = (error, result) => {
    beforeExitListener = null;
    if (error !== undefined && error !== null) {
      reportError(error);
    } else {
      reportResult(result);
    }
  };
  const callback = (error, result) => {
    beforeExitListener = null;
    if (error !== undefined && error !== null) {
      reportError(error);
    } else if (!waitForEmptyEventLoop) {
      reportResult(result);
    } else {
      beforeExitListener = () => reportResult(result);
    }
  };
  const callbacks = {
    get callbackWaitsForEmptyEventLoop() {
      return waitForEmptyEventLoop;
    },
    set callbackWaitsForEmptyEventLoop(value) {
      waitForEmptyEventLoop = value;
    },
    done: firstCallOnly(done),
    succeed: firstCallOnly((result) => done(null, result)),
    fail: firstCallOnly((error) =>
      error === undefined || error === null ? done('handled') : done(error, null),
    ),
  };
  const context = buildContext(callbacks);

  // A handler that returns without a callback or a settled promise: an async function has
  // lost its promise, and any other function reports null.
  const isAsync = handler.constructor && handler.constructor.name === 'AsyncFunction';
  beforeExitListener = () =>
    isAsync
      ? reportError(
          new NodeJsExit(
            'The event loop became empty before the handler returned a result: ' +
              'the handler returned a Promise that was never settled',
          ),
        )
      : reportResult(null);

  try {
    const result = handler(request.event, context, firstCallOnly(callback));
    if (result && typeof result.then === 'function') {
      result.then(context.succeed, context.fail);
    }
  } catch (error) {
    firstCallOnly(callback)(error);
  }
}

async function main() {
  process.on('uncaughtException', (error) => reportError(error));
  process.on('unhandledRejection', (reason) => reportError(new UnhandledPromiseRejection(reason)));

  let handler;
  try {
    handler = await loadHandler(request.taskRoot, request.handler);
  } catch (error) {
    reportError(error);
    return;
  }
  if (handler[STREAMING]) {
    reportUnsupported(
      `${request.handler} is a response streaming handler (awslambda.streamifyResponse), ` +
        'which invoke cannot run',
    );
    return;
  }
  invoke(handler);
}

main();
