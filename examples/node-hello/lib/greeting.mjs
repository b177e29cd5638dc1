export const greeting = (name) => `Hello, ${name}, from Node.js on ember!`;
