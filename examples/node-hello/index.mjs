// A Node.js function for ember, unchanged from Lambda:
//   ember runtimes install nodejs22.x
//   ember deploy node-hello examples/node-hello --handler index.handler
//   ember invoke node-hello --payload '{"name": "ember"}'
import { greeting } from "./lib/greeting.mjs";

export const handler = async (event, context) => {
  console.log("greeting", event.name ?? "world");
  return {
    message: greeting(event.name ?? "world"),
    requestId: context.awsRequestId,
    remainingMs: context.getRemainingTimeInMillis(),
    node: process.version,
  };
};
