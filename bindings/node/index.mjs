// ESM entry: the same module as the CommonJS one.
import hitsave from './index.js';

export const { memo, MISS, File, NDArray, HitSaveError, valueDigest, flush, errorCodes, componentDigest, configuration } =
  hitsave;
export default hitsave;
