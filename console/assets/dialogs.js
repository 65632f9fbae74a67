// Modal dialogs on the native <dialog> element: showModal() makes the rest
// of the page inert and gives Esc (the "cancel" event). On top of that, Tab
// and Shift+Tab wrap inside the dialog, focus goes to the first field on
// open and back to the button that opened it on close.

const FOCUSABLE = 'a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])';

function trapTab(event) {
  if (event.key !== "Tab") return;
  const dialog = event.currentTarget;
  const items = [...dialog.querySelectorAll(FOCUSABLE)].filter((n) => !n.hidden && n.offsetParent !== null);
  if (items.length === 0) return;
  const first = items[0];
  const last = items[items.length - 1];
  if (event.shiftKey && document.activeElement === first) {
    event.preventDefault();
    last.focus();
  } else if (!event.shiftKey && document.activeElement === last) {
    event.preventDefault();
    first.focus();
  }
}

/**
 * Prepares a dialog once. onCancel, when given, runs instead of closing on
 * Esc and on its [data-close] buttons (the secret dialog asks first).
 */
export function setup(dialog, { onCancel } = {}) {
  dialog.addEventListener("keydown", trapTab);
  dialog.addEventListener("cancel", (event) => {
    if (onCancel) {
      event.preventDefault();
      onCancel();
    }
  });
  for (const b of dialog.querySelectorAll("[data-close]")) {
    b.addEventListener("click", () => (onCancel ? onCancel() : close(dialog)));
  }
  dialog.addEventListener("close", () => {
    const back = dialog._returnFocus;
    dialog._returnFocus = null;
    if (back && back.isConnected && !back.disabled) back.focus();
  });
}

/** Opens a dialog modally and focuses `focus` (or its first field). */
export function open(dialog, focus) {
  if (!dialog.open) {
    dialog._returnFocus = document.activeElement;
    dialog.showModal();
  }
  const target = focus || dialog.querySelector(FOCUSABLE);
  if (target) target.focus();
}

/** Closes a dialog; focus returns to where it was when it opened. */
export function close(dialog) {
  if (dialog.open) dialog.close();
}
