import { fileURLToPath } from 'node:url';

/** Files shipped with kvplan, found from this module so commands work from any directory. */
const shipped = (path: string) => fileURLToPath(new URL(`../../${path}`, import.meta.url));

/** The trained model kvplan ships (see its model card beside it). */
export const bundledModelPath = () => shipped('models/tiny-dllm/model.onnx');

/** The example plans kvplan ships. */
export const bundledPlansDir = () => shipped('examples');
