// A small typed event emitter: `on` returns the function that removes the
// listener, `once` a promise of the next event. A listener that throws does
// not stop the others or the client; its error is reported the way a DOM
// EventTarget reports one (asynchronously, as an uncaught error).

/**
 * @template {object} Events a map from event name to the value listeners get
 */
export class Emitter {
  /** @type {Map<keyof Events, Set<(value: any) => void>>} */
  #listeners = new Map();

  /**
   * @template {keyof Events} K
   * @param {K} event
   * @param {(value: Events[K]) => void} listener
   * @returns {() => void} removes the listener
   */
  on(event, listener) {
    let set = this.#listeners.get(event);
    if (!set) {
      set = new Set();
      this.#listeners.set(event, set);
    }
    set.add(listener);
    return () => this.off(event, listener);
  }

  /**
   * @template {keyof Events} K
   * @param {K} event
   * @param {(value: Events[K]) => void} listener
   */
  off(event, listener) {
    this.#listeners.get(event)?.delete(listener);
  }

  /**
   * The next `event`, as a promise.
   * @template {keyof Events} K
   * @param {K} event
   * @returns {Promise<Events[K]>}
   */
  once(event) {
    return new Promise((resolve) => {
      const off = this.on(event, (value) => {
        off();
        resolve(value);
      });
    });
  }

  /**
   * @param {keyof Events} event
   * @returns {number} how many listeners `event` has
   */
  listenerCount(event) {
    return this.#listeners.get(event)?.size ?? 0;
  }

  /**
   * @template {keyof Events} K
   * @param {K} event
   * @param {Events[K]} value
   * @returns {boolean} whether anyone listened
   */
  emit(event, value) {
    const set = this.#listeners.get(event);
    if (!set || set.size === 0) return false;
    for (const listener of [...set]) {
      try {
        listener(value);
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
    return true;
  }
}
