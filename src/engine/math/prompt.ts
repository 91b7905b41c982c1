/**
 * The plain prompt format used when a model has no chat template (the shipped demo model is trained
 * on exactly this): the completion that follows is the worked solution, one step per line.
 */
export function formatPrompt(question: string): string {
  return `Question: ${question.trim()}\nAnswer:\n`;
}
