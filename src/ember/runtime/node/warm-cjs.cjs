// Loaded by a pre-started Node runtime before its function arrives (index.mjs warmUp):
// it runs the CommonJS loader and one call once, so they are compiled ahead.
exports.handler = async (event, context) => ({ warm: event.warm, id: context.awsRequestId });
