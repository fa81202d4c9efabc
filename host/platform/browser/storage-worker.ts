// CONTRACT (helper fills in): the storage worker (see storage.ts).
export {};
