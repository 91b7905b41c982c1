/** The bundled engine process (dist/engine.js): serve on the transport named on the command line. */
import { serve } from "./main";

serve();
