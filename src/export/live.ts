import type { Reporter } from '../report.ts';
import type { LangfuseLiveExporter } from './langfuse.ts';

/**
 * The live export a study asks for (`export: { langfuse: true }`), its failures told to `reporter`
 * as `langfuse: …` lines; null when it asks for none. Keys come from the environment and are
 * checked now: a missing one is a one-line UserError before anything is run or spent. The Langfuse
 * and OpenTelemetry SDKs (seconds of CPU to load) are loaded only by a study that asks for the export.
 */
export async function liveExportFor(study: { export: { langfuse: boolean } }, reporter: Pick<Reporter, 'event'>): Promise<LangfuseLiveExporter | null> {
  if (!study.export.langfuse) return null;
  const { LangfuseLiveExporter } = await import('./langfuse.ts');
  return LangfuseLiveExporter.fromEnv(process.env, { onError: (m) => reporter.event(`langfuse: ${m}`) });
}
