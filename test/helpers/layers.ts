// The layers of src/ (the README's architecture map, as numbers): checked against the imports by
// test/architecture.test.ts and against the README's map by test/docs.test.ts.
/** Layer of each top-level folder or file of src/, lowest first: the README's map, as numbers. */
export const LAYERS: Readonly<Record<string, number>> = {
  'errors.ts': 0, 'version.ts': 0, types: 0,
  config: 1, log: 1, exec: 1, tls: 1, io: 1,
  oci: 2, disk: 2, system: 2, state: 2, conductor: 2,
  commands: 3, configdrive: 3,
  deploy: 4,
  bootc: 5, image: 5, hardware: 5,
  api: 6, cli: 6,
  'agent.ts': 7,
  'main.ts': 8,
};
