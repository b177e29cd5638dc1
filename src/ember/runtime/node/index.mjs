// ember's Node.js runtime: Lambda's handler semantics over the Lambda Runtime API.
//
// Init loads the handler named by _HANDLER (CommonJS or ES module, Lambda's
// resolution rules) and reports an Init error the way Lambda's Node runtime does;
// then it answers invocations, over one of two transports:
// - `--frames`: ember's native protocol (runtime/frames.py) on fd 3, the socket
//   the worker holds; the sandbox process exec'd node, so no hop sits between
//   (the fast path, as the Python runtime's pyloop.py);
// - otherwise the Lambda Runtime API at AWS_LAMBDA_RUNTIME_API (rapi.py).
// A handler wrapped in `awslambda.streamifyResponse` streams: each write leaves
// at once (CHUNK frames; or a chunked POST with `Lambda-Runtime-Function-Response-
// Mode: streaming` and error trailers, as Lambda's own runtime does).
// Node's standard library only.
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import util from "node:util";
import net from "node:net";
import { Writable } from "node:stream";
import Module, { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const API = process.env.AWS_LAMBDA_RUNTIME_API || "127.0.0.1:9001";
const [HOST, PORT] = API.split(":");
const PREFIX = "/2018-06-01/runtime";
const MAJOR = Number(process.versions.node.split(".")[0]);
// Lambda's own words (aws-lambda-nodejs-runtime-interface-client).
const CALLBACK_REFUSED =
  "ERROR: AWS Lambda has removed support for callback-based function handlers starting " +
  "with Node.js 24. You need to modify this function to use a supported handler signature " +
  "to use Node.js 24 or later. For more information see " +
  "https://docs.aws.amazon.com/lambda/latest/dg/nodejs-handler.html.";
const RUNTIME_FILE = process.argv[1] || "/var/runtime/index.mjs";
const STREAMING = Symbol.for("aws.lambda.runtime.handler.streaming");
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

let currentRequestId = "";

// --- transport 1: the Lambda Runtime API ------------------------------------

function call(method, target, body, headers) {
  return new Promise((resolve, reject) => {
    const request = http.request(
      { host: HOST, port: PORT, method, path: PREFIX + target, agent, headers },
      (response) => {
        const chunks = [];
        response.on("data", (chunk) => chunks.push(chunk));
        response.on("end", () =>
          resolve({ headers: response.headers, body: Buffer.concat(chunks) }),
        );
      },
    );
    request.on("error", reject);
    request.end(body);
  });
}

function postError(target, error) {
  const payload = errorPayload(error);
  const body = Buffer.from(JSON.stringify(payload));
  return call("POST", target, body, {
    "Content-Type": "application/json",
    "Lambda-Runtime-Function-Error-Type": payload.errorType,
  });
}

const runtimeApi = {
  ready() {}, // the first /next ends Init
  async initError(error) {
    await postError("/init/error", error);
  },
  async next() {
    const { headers, body } = await call("GET", "/invocation/next");
    return {
      id: headers["lambda-runtime-aws-request-id"],
      deadline: Number(headers["lambda-runtime-deadline-ms"] || 0),
      arn: headers["lambda-runtime-invoked-function-arn"],
      clientContext: headers["lambda-runtime-client-context"],
      identity: headers["lambda-runtime-cognito-identity"],
      traceId: headers["lambda-runtime-trace-id"] || "",
      event: body,
    };
  },
  async respond(id, body) {
    await call("POST", `/invocation/${id}/response`, body);
  },
  async fail(id, error) {
    await postError(`/invocation/${id}/error`, error);
  },
  stream(id) {
    // One chunked POST carries the whole response; an error ends it in trailers.
    let request = null;
    let done = null;
    const open = (contentType) => {
      done = new Promise((resolve, reject) => {
        request = http.request(
          {
            host: HOST,
            port: PORT,
            method: "POST",
            path: `${PREFIX}/invocation/${id}/response`,
            agent,
            headers: {
              "Lambda-Runtime-Function-Response-Mode": "streaming",
              "Transfer-Encoding": "chunked",
              Trailer: "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body",
              "Content-Type": contentType,
            },
          },
          (response) => {
            response.resume();
            response.on("end", resolve);
          },
        );
        request.on("error", reject);
      });
    };
    return {
      prelude(value) {
        open(HTTP_INTEGRATION);
        request.write(JSON.stringify(value));
        request.write(PRELUDE_END);
      },
      chunk(buffer) {
        if (request === null) open("application/octet-stream");
        request.write(buffer);
      },
      async end() {
        if (request === null) open("application/octet-stream");
        request.end();
        await done;
      },
      async fail(error) {
        if (request === null) open("application/octet-stream");
        const payload = errorPayload(error);
        request.addTrailers({
          "Lambda-Runtime-Function-Error-Type": payload.errorType,
          "Lambda-Runtime-Function-Error-Body": Buffer.from(JSON.stringify(payload)).toString(
            "base64",
          ),
        });
        request.end();
        await done;
      },
    };
  },
  log(text) {
    process.stdout.write(text);
  },
};

// --- transport 2: ember's frames on fd 3 ---------------------------------------
// HEADER (u32 length, u8 kind) + payload; replies carry REPLY (u32 max RSS KiB,
// u32 log length) + log + body; INVOKE carries u32 meta length + NUL-separated
// meta (request id, deadline ms, ARN, client context, identity, trace id) + event.

const FRAMES_FD = 3;
const [INVOKE, READY, INIT_ERROR, RESULT, ERROR, LOG] = [1, 2, 3, 4, 5, 6];
const [CHUNK, STREAM_END, PRELUDE] = [8, 9, 10];
const MAX_CHUNK = 1024 * 1024; // as pyloop.py: no frame the worker must hold whole grows past it

function writeAll(buffer) {
  // Synchronous, so a frame is whole and ordered even when the process exits next.
  for (let offset = 0; offset < buffer.length; ) {
    try {
      offset += fs.writeSync(FRAMES_FD, buffer, offset);
    } catch (error) {
      if (error.code !== "EAGAIN") throw error;
    }
  }
}

function sendFrame(kind, body, log = EMPTY) {
  const head = Buffer.allocUnsafe(13);
  head.writeUInt32BE(8 + log.length + body.length, 0);
  head.writeUInt8(kind, 4);
  const measured = kind !== LOG && kind !== CHUNK && kind !== PRELUDE;
  head.writeUInt32BE(measured ? process.resourceUsage().maxRSS : 0, 5);
  head.writeUInt32BE(log.length, 9);
  writeAll(Buffer.concat([head, log, body]));
}

const EMPTY = Buffer.alloc(0);

// Frames are read with blocking reads, as Lambda's own runtime client blocks in
// its native next(): between calls the sandbox's event loop stands still, as
// a frozen Lambda environment's does, and no stream machinery sits on the path.
const HEAD = Buffer.alloc(5);

function readExactly(buffer) {
  for (let got = 0; got < buffer.length; ) {
    let count;
    try {
      count = fs.readSync(FRAMES_FD, buffer, got, buffer.length - got, null);
    } catch (error) {
      if (error.code === "EAGAIN" || error.code === "EINTR") continue;
      throw error;
    }
    if (count === 0) process.exit(0); // the worker closed the socket: the sandbox is finished
    got += count;
  }
}

function readFrame() {
  readExactly(HEAD);
  const frame = Buffer.allocUnsafe(HEAD.readUInt32BE(0));
  readExactly(frame);
  return frame;
}

const jsonBody = (value) => Buffer.from(JSON.stringify(value));

const frameTransport = {
  ready(initMs) {
    sendFrame(READY, jsonBody({ pid: process.pid, initMs }));
  },
  async initError(error) {
    sendFrame(INIT_ERROR, jsonBody(errorPayload(error)));
  },
  async next() {
    // One turn of the event loop for what the last call left (as Lambda's runtime
    // does before its blocking next), then wait for the next event.
    await new Promise((resolve) => setImmediate(resolve));
    const frame = readFrame();
    const metaLength = frame.readUInt32BE(0);
    const meta = frame.subarray(4, 4 + metaLength).toString("utf8").split("\0");
    return {
      id: meta[0],
      deadline: Number(meta[1]),
      arn: meta[2],
      clientContext: meta[3],
      identity: meta[4],
      traceId: meta[5] || "",
      event: frame.subarray(4 + metaLength),
    };
  },
  async respond(id, body) {
    sendFrame(RESULT, body);
  },
  async fail(id, error) {
    sendFrame(ERROR, jsonBody(errorPayload(error)));
  },
  stream() {
    return {
      prelude(value) {
        sendFrame(PRELUDE, jsonBody(value));
      },
      chunk(buffer) {
        for (let start = 0; start < buffer.length; start += MAX_CHUNK) {
          sendFrame(CHUNK, buffer.subarray(start, start + MAX_CHUNK));
        }
      },
      async end() {
        sendFrame(STREAM_END, EMPTY);
      },
      async fail(error) {
        sendFrame(ERROR, jsonBody(errorPayload(error)));
      },
    };
  },
  log(text) {
    sendFrame(LOG, EMPTY, Buffer.from(text));
  },
};

const transport = process.argv.includes("--frames") ? frameTransport : runtimeApi;

// --- errors ----------------------------------------------------------------

class RuntimeError extends Error {
  constructor(name, message, stack) {
    super(message);
    this.name = name;
    if (stack !== undefined) this.stack = stack;
  }
}

function errorPayload(error) {
  if (error instanceof Error) {
    const trace = typeof error.stack === "string" ? error.stack.split("\n") : [];
    return { errorType: error.name || "Error", errorMessage: error.message, trace };
  }
  // A thrown string, number, object...: Lambda reports its type and text.
  return { errorType: typeof error, errorMessage: String(error), trace: [] };
}

// --- logging ---------------------------------------------------------------

function patchConsole() {
  // Lambda's text format: timestamp, request id, level, message; a message's own
  // newlines become \r so that one call stays one log record.
  const write = (level) =>
    (...args) => {
      const message = util.format(...args).replace(/\n/g, "\r");
      transport.log(
        `${new Date().toISOString()}\t${currentRequestId || "undefined"}\t${level}\t${message}\n`,
      );
    };
  console.log = write("INFO");
  console.info = write("INFO");
  console.warn = write("WARN");
  console.error = write("ERROR");
  console.debug = write("DEBUG");
  console.trace = write("TRACE");
  console.fatal = write("FATAL");
}

// --- Init: finding and loading the handler ----------------------------------

function splitHandler(handler) {
  // "src/app.handler" -> directory "src", module "app", export path "handler".
  const base = path.basename(handler);
  const dir = handler.slice(0, handler.length - base.length);
  const dot = base.indexOf(".");
  if (dot <= 0 || dot === base.length - 1) {
    throw new RuntimeError("Runtime.MalformedHandlerName", `Bad handler ${handler}`);
  }
  return { dir, module: base.slice(0, dot), exportPath: base.slice(dot + 1) };
}

function isModuleType(file) {
  // The nearest package.json decides a .js file's kind, as in Node itself.
  for (let dir = path.dirname(file); ; dir = path.dirname(dir)) {
    const manifest = path.join(dir, "package.json");
    if (fs.existsSync(manifest)) {
      try {
        return JSON.parse(fs.readFileSync(manifest, "utf8")).type === "module";
      } catch {
        return false;
      }
    }
    if (dir === path.dirname(dir)) return false;
  }
}

async function loadModule(root, dir, name) {
  const base = path.resolve(root, dir, name);
  for (const extension of [".js", ".mjs", ".cjs"]) {
    const file = base + extension;
    if (!fs.existsSync(file)) continue;
    const esm = extension === ".mjs" || (extension === ".js" && isModuleType(file));
    if (esm) return await import(pathToFileURL(file).href);
    return createRequire(file)(file);
  }
  // No file of that name: a directory or a package, as Node resolves them.
  let resolved;
  try {
    resolved = createRequire(path.join(root, dir, "index.js")).resolve("./" + name);
  } catch {
    throw new RuntimeError(
      "Runtime.ImportModuleError",
      `Error: Cannot find module '${name}'\nRequire stack:\n- ${RUNTIME_FILE}`,
    );
  }
  return createRequire(resolved)(resolved);
}

function importError(error) {
  if (error instanceof RuntimeError) return error;
  if (error instanceof SyntaxError) {
    return new RuntimeError(
      "Runtime.UserCodeSyntaxError",
      `${error.name}: ${error.message}`,
      error.stack,
    );
  }
  if (error && (error.code === "MODULE_NOT_FOUND" || error.code === "ERR_MODULE_NOT_FOUND")) {
    // The module itself loads something missing: Lambda names that.
    return new RuntimeError("Runtime.ImportModuleError", `Error: ${error.message}`, error.stack);
  }
  return error; // thrown by the module's own top-level code: reported as it is
}

async function loadHandler(handlerString) {
  const { dir, module, exportPath } = splitHandler(handlerString);
  let loaded;
  try {
    loaded = await loadModule(process.env.LAMBDA_TASK_ROOT || "/var/task", dir, module);
  } catch (error) {
    throw importError(error);
  }
  let handler = loaded;
  for (const part of exportPath.split(".")) {
    handler = handler == null ? undefined : handler[part];
  }
  if (handler === undefined && loaded && loaded.default) {
    // A CommonJS module imported as ESM keeps its exports under default.
    handler = exportPath.split(".").reduce((value, part) => value && value[part], loaded.default);
  }
  if (handler === undefined) {
    throw new RuntimeError(
      "Runtime.HandlerNotFound",
      `${module}.${exportPath} is undefined or not exported`,
    );
  }
  if (typeof handler !== "function") {
    throw new RuntimeError("Runtime.HandlerNotFound", `${module}.${exportPath} is not a function`);
  }
  if (MAJOR >= 24 && handler.length >= 3 && !handler[STREAMING]) {
    throw new RuntimeError("Runtime.CallbackHandlerDeprecated", CALLBACK_REFUSED);
  }
  return handler;
}

// --- the context object ----------------------------------------------------

function parseJson(text) {
  return text ? JSON.parse(text) : undefined;
}

function makeContext(invocation, settle) {
  const deadline = invocation.deadline;
  const env = process.env;
  const context = {
    callbackWaitsForEmptyEventLoop: true,
    functionName: env.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: env.AWS_LAMBDA_FUNCTION_VERSION,
    invokedFunctionArn: invocation.arn,
    memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    awsRequestId: invocation.id,
    logGroupName: env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: env.AWS_LAMBDA_LOG_STREAM_NAME,
    clientContext: parseJson(invocation.clientContext),
    identity: parseJson(invocation.identity),
    getRemainingTimeInMillis: () => Math.max(deadline - Date.now(), 0),
    // The legacy methods Lambda's runtime still offers.
    succeed: (result) => settle(null, result),
    fail: (error) => settle(error || "handled"),
    done: (error, result) => settle(error, result),
  };
  return context;
}

// --- awslambda globals -----------------------------------------------------

class ResponseStream extends Writable {
  // Every write goes out at once; the HTTP prelude (HttpResponseStream.from) goes
  // first, with the first write or the end.
  constructor(sink) {
    super();
    this.sink = sink;
    this.prelude = undefined;
    this.started = false;
    this.contentType = undefined;
  }
  begin() {
    if (this.started) return;
    this.started = true;
    if (this.prelude !== undefined) this.sink.prelude(this.prelude);
  }
  _write(chunk, encoding, done) {
    this.begin();
    const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk, encoding);
    try {
      if (buffer.length) this.sink.chunk(buffer);
      done();
    } catch (error) {
      done(error);
    }
  }
  _final(done) {
    this.begin();
    done();
  }
  setContentType(type) {
    this.contentType = type;
  }
}

const HTTP_INTEGRATION = "application/vnd.awslambda.http-integration-response";
const PRELUDE_END = Buffer.alloc(8);

globalThis.awslambda = {
  streamifyResponse(handler) {
    const wrapped = async (event, responseStream, context) => handler(event, responseStream, context);
    wrapped[STREAMING] = true;
    return wrapped;
  },
  HttpResponseStream: {
    from(stream, prelude) {
      // A function URL's status, headers and cookies, sent ahead of the body.
      stream.prelude = prelude || {};
      return stream;
    },
  },
};

async function runStreaming(handler, event, context, invocation) {
  const stream = new ResponseStream(transport.stream(invocation.id));
  const finished = new Promise((resolve, reject) => {
    stream.on("finish", resolve);
    stream.on("error", reject);
  });
  finished.catch(() => {}); // a failed stream is reported below, not as a stray rejection
  try {
    await handler(event, stream, context);
    if (!stream.writableEnded) stream.end();
    await finished;
  } catch (error) {
    await stream.sink.fail(error);
    return { streamed: true };
  }
  await stream.sink.end();
  return { streamed: true };
}

// --- one invocation --------------------------------------------------------

function invokeHandler(handler, event, invocation) {
  // Resolves with { value } (the result) or { streamed } (the stream was sent and
  // ended), or rejects with the error.
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (error, result) => {
      if (settled) return;
      settled = true;
      const answer = () => (error != null ? reject(error) : resolve({ value: result }));
      if (context.callbackWaitsForEmptyEventLoop) {
        // As on Lambda: the answer leaves once the work the handler started is done.
        process.once("beforeExit", answer);
      } else {
        answer();
      }
    };
    const context = makeContext(invocation, settle);
    try {
      if (handler[STREAMING]) {
        runStreaming(handler, event, context, invocation).then(resolve, reject);
        return;
      }
      const returned = handler(event, context, settle);
      if (returned && typeof returned.then === "function") {
        returned.then(
          (value) => {
            settled = true;
            resolve({ value });
          },
          (error) => {
            settled = true;
            reject(error);
          },
        );
      }
    } catch (error) {
      settled = true;
      reject(error);
    }
  });
}

function encodeResult(answer) {
  const text = JSON.stringify(answer.value);
  return Buffer.from(text === undefined ? "null" : text);
}

async function serve(handler) {
  for (;;) {
    const invocation = await transport.next();
    currentRequestId = invocation.id;
    process.env._X_AMZN_TRACE_ID = invocation.traceId;
    let answer;
    try {
      const event = JSON.parse(invocation.event.toString("utf8") || "null");
      answer = await invokeHandler(handler, event, invocation);
    } catch (error) {
      await transport.fail(invocation.id, error);
      continue;
    }
    if (!answer.streamed) await transport.respond(invocation.id, encodeResult(answer));
  }
}

// --- the process -----------------------------------------------------------

function fatal(errorType) {
  // An error no handler caught: reported for the current invocation (or Init),
  // then the runtime exits, as Lambda's does.
  return async (reason) => {
    const error =
      errorType === "Runtime.UnhandledPromiseRejection"
        ? new RuntimeError(errorType, String(reason), reason && reason.stack)
        : reason;
    try {
      if (currentRequestId) await transport.fail(currentRequestId, error);
      else await transport.initError(error);
    } finally {
      process.exit(errorType === "Runtime.UnhandledPromiseRejection" ? 128 : 129);
    }
  };
}

async function warmUp() {
  // Run once through what a claim and a first call use, while no function waits:
  // V8 compiles it now instead of in the function's cold start.
  const dir = path.dirname(RUNTIME_FILE);
  for (const name of ["warm-cjs", "warm-esm"]) {
    const loaded = await loadModule(dir, "", name);
    const handler = loaded.handler || (loaded.default && loaded.default.handler);
    const invocation = { id: "", deadline: Date.now() + 1000, arn: "", clientContext: "" };
    const event = JSON.parse(Buffer.from('{"warm": [1, "a", null]}').toString("utf8"));
    encodeResult(await invokeHandler(handler, event, invocation));
  }
  errorPayload(new Error("warm"));
  util.format("%s %o", "warm", { a: [1] });
  process.resourceUsage();
}

async function claimed() {
  // Started ahead of its function (ember's pool of pre-started runtimes): the
  // function arrives as the first frame, its code already mounted at its cwd.
  // What node reads only as it starts (NODE_OPTIONS, LD_*, ...) was the same
  // at exec (zygote_main.py picks the pool by it); the rest is set here.
  await warmUp();
  const spec = JSON.parse(readFrame().toString("utf8"));
  for (const name of Object.keys(process.env)) {
    if (!(name in spec.env)) delete process.env[name];
  }
  for (const [name, value] of Object.entries(spec.env)) {
    // Unchanged ones untouched: setting TZ, even to its value, reloads the time zone (ms).
    if (process.env[name] !== value) process.env[name] = value;
  }
  process.chdir(spec.cwd);
  Module._initPaths(); // NODE_PATH, as if it had been set at start
}

async function main() {
  if (process.argv.includes("--claim")) await claimed();
  patchConsole();
  process.on("unhandledRejection", fatal("Runtime.UnhandledPromiseRejection"));
  process.on("uncaughtException", fatal("uncaughtException"));
  const started = performance.now();
  let handler;
  try {
    handler = await loadHandler(process.env._HANDLER || "");
  } catch (error) {
    await transport.initError(error);
    process.exit(1);
  }
  transport.ready(performance.now() - started);
  await serve(handler);
}

main();
