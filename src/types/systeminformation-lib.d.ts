// Types for the four systeminformation modules the inventory imports one by one
// (src/hardware/inventory.ts): each is CommonJS and re-exported unchanged by the package's
// index, so the index's declarations describe them.
declare module 'systeminformation/lib/cpu.js' {
  export { cpu, cpuFlags } from 'systeminformation';
}
declare module 'systeminformation/lib/memory.js' {
  export { mem, memLayout } from 'systeminformation';
}
declare module 'systeminformation/lib/system.js' {
  export { system, bios } from 'systeminformation';
}
declare module 'systeminformation/lib/network.js' {
  export { networkInterfaces } from 'systeminformation';
}
