const escapes: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => escapes[char] ?? char);
}

/** A plain result page for the end of a connect flow; styled by /ui/styles.css. */
export function resultPage(title: string, message: string, ok: boolean): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)} · tokenwarden</title>
<link rel="stylesheet" href="/ui/styles.css">
</head>
<body>
<main class="result ${ok ? 'result-ok' : 'result-error'}" data-testid="connect-result">
<h1>${escapeHtml(title)}</h1>
<p>${escapeHtml(message)}</p>
<p><a href="/">Open tokenwarden</a></p>
</main>
</body>
</html>
`;
}
