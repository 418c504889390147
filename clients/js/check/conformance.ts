// The implementation (src/, typed by its JSDoc) must fit the hand-written
// declarations (types/index.d.ts) that applications compile against: every
// export declared exists, with a compatible type. A declaration that drifts
// from the code fails `tsc --noEmit`.
import * as declared from "@rookery/client";
import * as implementation from "../src/index.js";

export const conforms: typeof declared = implementation;

// And nothing is exported that is not declared.
type Undeclared = Exclude<keyof typeof implementation, keyof typeof declared>;
export const nothingUndeclared: [Undeclared] extends [never] ? true : Undeclared = true;
