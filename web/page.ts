// CONTRACT (helper fills in): the page `wasmvisor web` serves.
export {};
