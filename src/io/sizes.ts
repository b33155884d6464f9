/**
 * Byte units, so sizes read as what they are (`64 * MiB`) and no module keeps its own copy.
 * @module
 */
export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;
