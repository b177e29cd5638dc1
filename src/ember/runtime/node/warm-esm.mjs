// Loaded by a pre-started Node runtime before its function arrives (index.mjs warmUp):
// it runs the ES module loader and one call once, so they are compiled ahead.
export const handler = async (event, context) => ({ warm: event.warm, id: context.awsRequestId });
